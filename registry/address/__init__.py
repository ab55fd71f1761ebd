"""One standard: free-text Chinese addresses parsed, matched to standard addresses and
rooms, and the review queue for what cannot be placed with certainty
(docs/address-matching.md)."""
