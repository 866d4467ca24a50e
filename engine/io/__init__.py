"""Reading user files and writing results safely."""
