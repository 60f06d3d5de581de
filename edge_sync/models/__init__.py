"""PyTorch models: legacy SyncNet S (FCN form), SyncNetFCN teacher, X3D-style student."""
