//! Measurements of full-text search for the load run (filled below).
