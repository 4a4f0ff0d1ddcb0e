"""pairrel: pair relevance classification (BCE) vs softmax losses for text encoders."""

__version__ = "0.1.0"
