"""Evaluation on real footage: the planted-offset protocol over folders of in-sync clips of real people."""
