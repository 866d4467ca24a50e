"""Scene handling around CLIPascene: splitting a photo into object and background, combining their sketches."""
