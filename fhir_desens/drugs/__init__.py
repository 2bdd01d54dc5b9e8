"""Drug knowledge as data with sources, and pure checks over it."""
