"""Numpy-only feature extraction: MFCC, media decode, face tracking and crops."""
