"""One router per file: recommendations, tools, knowledge, conversations, health."""
