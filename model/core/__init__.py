"""What every part of the toolkit stands on: errors a user can fix, safe file writes, locks, and where code runs."""
