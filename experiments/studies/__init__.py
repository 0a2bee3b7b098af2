"""Studies: analyses that pool several trained runs into one typed, versioned record."""
