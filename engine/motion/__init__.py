"""The sketch draws itself: its strokes drawn one by one, most important first, as an animated SVG,
a GIF or an MP4 (`sketch-abstraction animate`, Inkscape's Animate Sketch).

plan.py reads a sketch SVG and decides the order and timing; svg.py writes the animated SVG (CSS,
every stroke still a path); frames.py draws the frames and writes GIF and MP4.
"""
