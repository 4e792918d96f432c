"""The batch runner behind ``python -m twostage_i2v batch``: workers, the local and Ray runners, progress."""
