"""Sampling rules that need no ComfyUI: where Wan 2.2's two A14B experts hand over.

The sigmas themselves come from ComfyUI at run time (the node asks the MODEL's
own sampling object); this package only decides, from a list of sigmas, the
step at which the official Wan 2.2 rule switches experts.
"""
