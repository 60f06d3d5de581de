"""Training and test data: synthetic talking mouths, real-photo clips, user corpora."""
