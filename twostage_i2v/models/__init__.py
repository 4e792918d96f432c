"""What a model file holds and how its tensors are named: Wan diffusion models, umt5 text encoders, recipes."""
