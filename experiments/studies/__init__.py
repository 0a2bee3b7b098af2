"""Studies: one module per study; each gets its runs, analyses and pools them, and returns a typed,
versioned record that a command prints and a figure draws."""
