"""The sketching methods and the pieces they share."""
