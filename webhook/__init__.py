"""gpu-rightsizer: right-size whole-GPU pods into NVIDIA MIG slices at admission time."""
