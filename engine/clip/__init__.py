"""CLIP models (open_clip, OpenAI weights) and the features the methods need from them."""
