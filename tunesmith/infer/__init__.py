"""Using a trained model: loading for inference, prompts, export (merge), chat, batch generation, the server.

Import direction: infer sits above model/ and data/ (beside train/) and imports neither train/ nor recipes/;
the generation core lives in `tunesmith.model.generation` so that train/predict.py shares it."""
