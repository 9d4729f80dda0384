"""From a trained model to answers: probabilities over a loader, evaluation of a split, prediction for
photo files (with reverse geocoding) and maps of the cell probabilities."""
