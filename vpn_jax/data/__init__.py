"""Datasets: Moving MNIST, the robotic pushing formats, folders of videos, and the input
pipeline that turns them into training and evaluation batches."""
