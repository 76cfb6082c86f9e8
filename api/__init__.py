"""The HTTP edge: `journey serve`, Segment's tracking API (and so RudderStack's clients) in front of
the engine. It imports engine/ and is never imported by it."""
