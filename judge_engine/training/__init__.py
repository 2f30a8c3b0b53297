"""Training the distilled judge: datasets, embeddings, the trainer, fine-tuning, calibration, export.
"""
