"""Channel adapters: each converts a platform event to a bot.Message and a bot.Reply back."""
