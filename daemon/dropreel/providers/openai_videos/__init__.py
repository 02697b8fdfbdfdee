"""OpenAI-compatible `/v1/videos` providers (OpenAI, Lumenfall): see openai-videos-api.md."""
