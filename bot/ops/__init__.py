"""Operating Stemme on a municipality's servers: configuration check, backup and restore."""
