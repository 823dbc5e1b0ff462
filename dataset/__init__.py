"""Sources: COCO captions and boxes, the mix665k baseline, downloads and the bundled sample.

The lowest package: it imports nothing from core (core.records re-exports its nouns).
"""
