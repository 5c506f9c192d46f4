"""HTTP values both sides share: answers, the inbox a body arrives through, the framing rules
of a message, and the answers scopegate makes itself (problem details, challenges)."""
