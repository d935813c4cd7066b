"""Networks: generators, discriminators, losses and the explicit registry that builds them."""
