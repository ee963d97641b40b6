"""The machinery every stage shares: settings, data, training loop, Tune runner, outputs."""
