"""Model parts: ResNet backbones, projection heads and the squeeze module (Fig. 2)."""
