"""The embedded offline LLM: packaged GGUF, llama.cpp server supervisor, OpenAI-protocol client."""
