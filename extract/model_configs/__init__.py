"""open_clip model configurations shipped with t3al (registered before model creation)."""
