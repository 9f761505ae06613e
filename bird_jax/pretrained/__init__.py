"""Pretrained weights from PyTorch, timm, torchvision and Hugging Face files, read without
executing code and mapped onto bird_jax models."""
