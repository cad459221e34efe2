"""The `gpu-rightsizer` command line (main) and its sub-commands, one module each. The top
layer: it may import every other one, and nothing imports it."""
