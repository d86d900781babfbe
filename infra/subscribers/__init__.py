"""Public subscribers: people who get incident mail at an address they confirmed."""
