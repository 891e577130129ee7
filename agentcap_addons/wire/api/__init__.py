"""The three LLM APIs (chat completions, Responses, Anthropic Messages): SSE decoding, requests and
responses decoded into one message shape, rendering replies, pretty lines, sessions rebuilt from calls."""
