# The textbook VAE: the minimal MNIST script that the course starts from (notebook 04 trains the
# same model, with the same settings, on the course's fast data path). It comes, unchanged, from
# the short introduction to VAEs that the course grew from (Kingma and Welling's model, an MLP
# with a 2-D code, binary cross-entropy plus the closed-form KL term; hidden 400, batch 128,
# 10 epochs, Adam 1e-3). It downloads MNIST with torchvision; run it with `python textbook/vae.py`.
# `python -m vae_lib.train` trains the same model from the command line on the course's data.
# Much of it follows pytorch/examples' vae/main.py (BSD-3-Clause, Copyright (c) 2017 Pytorch
# contributors): the reparameterization, the loss and the training loop; see LICENSE.

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

# Set hyperparameters
input_dim = 28 * 28  # MNIST image size
hidden_dim = 400
latent_dim = 2  # Latent space dimension
batch_size = 128
epochs = 10
lr = 1e-3

# Data loading
transform = transforms.Compose([transforms.ToTensor(), transforms.Lambda(lambda x: x.view(-1))])
train_dataset = datasets.MNIST(root='./data', train=True, transform=transform, download=True)
train_loader = DataLoader(train_dataset, batch_size=batch_size, shuffle=True)

# VAE model
class VAE(nn.Module):
    def __init__(self):
        super(VAE, self).__init__()
        # Encoder
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)
        # Decoder
        self.fc3 = nn.Linear(latent_dim, hidden_dim)
        self.fc4 = nn.Linear(hidden_dim, input_dim)

    def encode(self, x):
        h = torch.relu(self.fc1(x))
        mu = self.fc_mu(h)
        logvar = self.fc_logvar(h)
        return mu, logvar

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h = torch.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h))  # Output in [0,1], suitable for MNIST

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar

# Loss function
def loss_function(recon_x, x, mu, logvar):
    BCE = nn.functional.binary_cross_entropy(recon_x, x, reduction='sum')  # Reconstruction loss
    KLD = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())  # KL divergence
    return BCE + KLD

# Main function: Training and generation
def main():
    # Initialize model and optimizer
    model = VAE()
    optimizer = optim.Adam(model.parameters(), lr=lr)

    # Training loop
    for epoch in range(epochs):
        model.train()
        train_loss = 0
        for batch_idx, (data, _) in enumerate(train_loader):
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        print(f'Epoch {epoch+1}, Loss: {train_loss / len(train_loader.dataset):.4f}')

    # Generate samples
    with torch.no_grad():
        z = torch.randn(64, latent_dim)  # Random sampling
        samples = model.decode(z).view(64, 1, 28, 28)
        # Uncomment the following to save generated images
        # from torchvision.utils import save_image
        # save_image(samples, 'samples.png')

if __name__ == "__main__":
    main()

