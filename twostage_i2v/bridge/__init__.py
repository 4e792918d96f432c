"""Stage Bridge: the stage-1 image to the exact frame Wan wants (geometry, then pixels)."""
