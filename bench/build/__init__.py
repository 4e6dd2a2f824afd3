"""Stage 2, the parts of a run built from its config: model (`models`), optimizer, schedule and sampler (`parts`),
the samplers' runtime inputs by input name (`inputs`) and what the NWS sketch hashes (`features`)."""
