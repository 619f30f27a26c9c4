"""Raw mail bytes to a parsed mail: charsets, HTML to text, attachments listed, auto-mail marked.

This is the intake side of understanding: it never decides anything about a request, it only
turns what arrived into text and headers the core can read.
"""
