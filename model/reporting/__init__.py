"""What the toolkit writes for people to read: tables, figures, drawn predictions, comparisons, the PDF."""
