"""One typed config for a run: the case, vendor and command-line layers, their validation, the
packaged cases and their reference rows, FLOPs per token for MFU, --model's Hub resolution."""
