"""Motion prompts for Wan I2V: the offline lint, its rules (rules.json) and Wan's own prompt pieces."""
