"""The seeds' own training loops, copied in plain torch (no d2l), for benchmarks/bench.py.

bench.py runs this file as a child process, so start-up and data loading count:

    python benchmarks/seed_way.py --task lenet --epochs 2 --device cpu \
        --data-root DIR --work-dir DIR --result result.json

It prints what the seed prints and writes {"test_accuracy", "train_seconds", "epochs",
"train_samples"} to --result. `train_seconds` is the wall time of the training loops only (waiting
for batches included, evaluation left out), the same quantity bench.py reads from the other ways.

--data-root holds torchvision's layout (FashionMNIST/raw/, MNIST/raw/ with the gunzipped IDX
files) and cifar10/{train,test}.npz; bench.py builds it. The builders below (Setup) are shared with
lightning_way.py so that both run the same model, optimizer and DataLoaders.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class Setup:
    """What a seed trains: its model, its DataLoaders and its optimizer."""

    net: nn.Module
    train_loader: DataLoader
    test_loader: DataLoader
    make_optimizer: OptimizerFactory
    init: Callable[[nn.Module], None] | None = None  # applied with net.apply before training


# ---------------------------------------------------------------- seed 001: d2l LeNet (ch. 6.6)


class Reshape(nn.Module):
    def forward(self, x):
        return x.view(-1, 1, 28, 28)


def lenet() -> nn.Sequential:
    """The seed's LeNet: sigmoid activations and average pooling, as in d2l."""
    return nn.Sequential(
        Reshape(),
        nn.Conv2d(1, 6, kernel_size=5, padding=2),  # (N, 6, 28, 28)
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),  # (N, 6, 14, 14)
        nn.Conv2d(6, 16, kernel_size=5),  # (N, 16, 10, 10)
        nn.Sigmoid(),
        nn.AvgPool2d(kernel_size=2, stride=2),  # (N, 16, 5, 5)
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Sigmoid(),
        nn.Linear(120, 84),
        nn.Sigmoid(),
        nn.Linear(84, 10),
    )


def xavier_init(m: nn.Module) -> None:
    """train_ch6's init_weights: Xavier-uniform weights of Linear and Conv2d, biases untouched."""
    if type(m) is nn.Linear or type(m) is nn.Conv2d:
        nn.init.xavier_uniform_(m.weight)


def lenet_setup(data_root: Path) -> Setup:
    """d2l.load_data_fashion_mnist(256): ToTensor only, 4 workers for both loaders (d2l's
    get_dataloader_workers), the test loader unshuffled."""
    trans = transforms.ToTensor()
    train = torchvision.datasets.FashionMNIST(data_root, train=True, transform=trans)
    test = torchvision.datasets.FashionMNIST(data_root, train=False, transform=trans)
    return Setup(
        net=lenet(),
        train_loader=DataLoader(train, batch_size=256, shuffle=True, num_workers=4),
        test_loader=DataLoader(test, batch_size=256, shuffle=False, num_workers=4),
        make_optimizer=lambda params: torch.optim.SGD(params, lr=0.9),
        init=xavier_init,
    )


class Accumulator:
    """d2l.Accumulator: sums over n variables."""

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args, strict=True)]

    def __getitem__(self, idx):
        return self.data[idx]


class Timer:
    """d2l.Timer: the seed's own examples/sec leaves out the time spent waiting for batches."""

    def __init__(self):
        self.times = []

    def start(self):
        self.tik = time.time()

    def stop(self):
        self.times.append(time.time() - self.tik)
        return self.times[-1]

    def sum(self):
        return sum(self.times)


def d2l_accuracy(y_hat, y):
    """d2l.accuracy: the number of correct predictions."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def evaluate_accuracy_gpu(net, data_iter, device=None):
    if isinstance(net, torch.nn.Module):
        net.eval()
        if not device:
            device = next(iter(net.parameters())).device
    metric = Accumulator(2)
    for X, y in data_iter:
        X = [x.to(device) for x in X] if isinstance(X, list) else X.to(device)
        y = y.to(device)
        metric.add(d2l_accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    """The seed's loop line for line (Animator left out, as the seed itself comments it out);
    returns (test accuracy, training-loop wall seconds)."""
    net.apply(xavier_init)
    print("training on", device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()
    timer, num_batches = Timer(), len(train_iter)
    train_seconds = 0.0
    for epoch in range(num_epochs):
        metric = Accumulator(3)
        net.train()
        epoch_start = time.perf_counter()  # bench: wall clock, batch waits included
        for i, (X, y) in enumerate(train_iter):
            timer.start()
            optimizer.zero_grad()
            X, y = X.to(device), y.to(device)
            y_hat = net(X)
            l = loss(y_hat, y)  # noqa: E741 (the seed's name)
            l.backward()
            optimizer.step()
            with torch.no_grad():
                metric.add(l * X.shape[0], d2l_accuracy(y_hat, y), X.shape[0])
            timer.stop()
            train_l = metric[0] / metric[2]
            train_acc = metric[1] / metric[2]
            if (i + 1) % (num_batches // 5) == 0 or i == num_batches - 1:
                print(
                    f"epoch {epoch + 1}, step {i + 1}, train loss {train_l:.3f}, "
                    f"train acc {train_acc:.3f}"
                )
        train_seconds += time.perf_counter() - epoch_start
        test_acc = evaluate_accuracy_gpu(net, test_iter)
        print(f"epoch {epoch + 1}, test acc {test_acc:.3f}")
    print(f"loss {train_l:.3f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}")
    print(f"{metric[2] * num_epochs / timer.sum():.1f} examples/sec on {device!s}")
    return test_acc, train_seconds


# ---------------------------------------------------------- seed 003: simple CNN on MNIST


class Model(nn.Module):
    """Seed 003's CNN: Conv(1,10,5) MaxPool ReLU Conv(10,20,5) MaxPool ReLU Linear(320,10)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, 5)
        self.conv2 = nn.Conv2d(10, 20, 5)
        self.linear = nn.Linear(320, 10)
        self.mp = nn.MaxPool2d(2)
        self.activate = nn.ReLU()

    def forward(self, x):
        batch_size = x.size(0)
        x = self.activate(self.mp(self.conv1(x)))  # (N, 10, 12, 12)
        x = self.activate(self.mp(self.conv2(x)))  # (N, 20, 4, 4)
        x = x.view(batch_size, -1)  # (N, 320)
        return self.linear(x)


def mnist_setup(data_root: Path) -> Setup:
    """Seed 003's pipeline: ToTensor + Normalize, batch 64, both loaders shuffled, no workers."""
    trans = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = torchvision.datasets.MNIST(data_root, train=True, transform=trans)
    test_set = torchvision.datasets.MNIST(data_root, train=False, transform=trans)
    return Setup(
        net=Model(),
        train_loader=DataLoader(train_set, batch_size=64, shuffle=True),
        test_loader=DataLoader(test_set, batch_size=64, shuffle=True),
        make_optimizer=lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.5),
    )


def train_seed003(setup: Setup, epochs: int, device: torch.device, work_dir: Path):
    """Seed 003's train() then test(); the seed evaluates once, after the last epoch."""
    model = setup.net.to(device)
    train_loader, train_set = setup.train_loader, setup.train_loader.dataset
    criterion = nn.CrossEntropyLoss()
    optimizer = setup.make_optimizer(model.parameters())
    optim_name = optimizer.__str__().split("(")[0].strip()
    print("optimizer name:", optim_name)
    train_seconds = 0.0
    for epoch in range(epochs):
        TP = 0
        loss_lst = []
        epoch_start = time.perf_counter()
        for imgs, labels in train_loader:
            imgs, labels = imgs.to(device), labels.to(device)  # the seed's "use the GPU" part
            y_pred = model(imgs)
            loss = criterion(y_pred, labels)
            loss_lst.append(loss.item())
            y_hat = copy.copy(y_pred)
            TP += torch.sum(labels.flatten() == torch.argmax(y_hat, dim=1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        train_seconds += time.perf_counter() - epoch_start
        acc = TP.item() / len(train_set)  # the seed's TP.data.numpy() works on the CPU only
        print("epoch:", epoch, "loss:", np.mean(loss_lst), "acc:", round(acc, 3))
        torch.save(model.state_dict(), work_dir / f"{optim_name}_acc_{round(acc, 2)}.pth")
    # test(): the seed reloads the file it saved; the weights are already in memory here
    TP = 0
    for imgs, labels in setup.test_loader:
        imgs, labels = imgs.to(device), labels.to(device)
        with torch.no_grad():
            y_pred = model(imgs)
        TP += torch.sum(labels.flatten() == torch.argmax(copy.copy(y_pred), dim=1))
    acc = TP.item() / len(setup.test_loader.dataset)
    print("acc:", round(acc, 4), f"TP: {TP} / {len(setup.test_loader.dataset)}")
    return acc, train_seconds


# ---------------------------------------------------------- seed 004: the CIFAR-10 net


class NpzCIFAR10(Dataset):
    """torchvision.datasets.CIFAR10 read from cifar10/{train,test}.npz instead of the pickles.

    torchvision keeps the whole split as one (N, 32, 32, 3) uint8 array and makes a PIL image per
    item before the transform; this does the same, so ToTensor costs what it costs in the seed.
    """

    def __init__(self, folder: Path, train: bool, transform=None):
        arrays = np.load(folder / ("train.npz" if train else "test.npz"))
        self.data, self.targets = arrays["x"], arrays["y"].tolist()  # (N, 32, 32, 3) HWC
        self.transform = transform

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = Image.fromarray(self.data[index]), self.targets[index]
        if self.transform is not None:
            img = self.transform(img)
        return img, target


class MyConvModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 32, 5, 1, padding=2),  # (N, 32, 32, 32)
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5, 1, padding=2),  # (N, 32, 16, 16)
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, 1, padding=2),  # (N, 64, 8, 8)
            nn.MaxPool2d(2),
            nn.Flatten(),  # (N, 1024)
            nn.Linear(64 * 4 * 4, 64),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.model(x)


def cifar_setup(data_root: Path) -> Setup:
    """Seed 004's pipeline: ToTensor only, DataLoader(data, 64) — not shuffled, no workers."""
    folder = data_root / "cifar10"
    train_data = NpzCIFAR10(folder, train=True, transform=transforms.ToTensor())
    test_data = NpzCIFAR10(folder, train=False, transform=transforms.ToTensor())
    return Setup(
        net=MyConvModel(),
        train_loader=DataLoader(train_data, 64),
        test_loader=DataLoader(test_data, 64),
        make_optimizer=lambda params: torch.optim.SGD(params, lr=1e-2),
    )


def train_seed004(setup: Setup, epochs: int, device: torch.device, work_dir: Path):
    """Seed 004's GPU version: TensorBoard scalars, a test pass and a saved model every epoch."""
    from torch.utils.tensorboard import SummaryWriter  # only this seed needs it

    my_conv_model = setup.net.to(device)
    loss_fun = nn.CrossEntropyLoss().to(device)
    optim_sgd = setup.make_optimizer(my_conv_model.parameters())
    test_data_size = len(setup.test_loader.dataset)
    train_time, train_seconds = 0, 0.0
    writer = SummaryWriter(str(work_dir / "logs_train"))
    for i in range(epochs):
        print(f"epoch {i + 1}")
        my_conv_model.train()
        epoch_start = time.perf_counter()
        for imgs, targets in setup.train_loader:
            imgs, targets = imgs.to(device), targets.to(device)
            loss = loss_fun(my_conv_model(imgs), targets)
            optim_sgd.zero_grad()
            loss.backward()
            optim_sgd.step()
            train_time += 1
            if train_time % 100 == 0:
                print(f"step {train_time}, loss {loss.item()}")
                writer.add_scalar("train_loss", loss.item(), train_time)
        sync(device)
        train_seconds += time.perf_counter() - epoch_start
        total_test_loss, total_accuracy = 0, 0
        my_conv_model.eval()
        with torch.no_grad():
            for imgs, targets in setup.test_loader:
                imgs, targets = imgs.to(device), targets.to(device)
                outputs = my_conv_model(imgs)
                total_test_loss += loss_fun(outputs, targets).item()
                total_accuracy += (outputs.argmax(1) == targets).sum()
        print(f"test loss {total_test_loss}, test accuracy {total_accuracy / test_data_size}")
        writer.add_scalar("test_loss", total_test_loss, i + 1)  # the seed's test_time counter
        writer.add_scalar("test_accuracy", total_accuracy / test_data_size, i + 1)
        torch.save(my_conv_model, work_dir / f"myConvModel_{i + 1}.pth")
    writer.close()
    return float(total_accuracy / test_data_size), train_seconds


# ---------------------------------------------------------------- entry point

SETUPS: dict[str, Callable[[Path], Setup]] = {
    "lenet": lenet_setup,
    "mnist": mnist_setup,
    "cifar": cifar_setup,
}


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer stopped after it measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_seed(task: str, setup: Setup, epochs: int, device: torch.device, work_dir: Path):
    if task == "lenet":
        return train_ch6(setup.net, setup.train_loader, setup.test_loader, epochs, 0.9, device)
    if task == "mnist":
        return train_seed003(setup, epochs, device, work_dir)
    return train_seed004(setup, epochs, device, work_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(SETUPS), required=True)
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--work-dir", type=Path, required=True, help="for the seeds' saved files")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    setup = SETUPS[args.task](args.data_root)
    os.makedirs(args.work_dir, exist_ok=True)
    device = torch.device(args.device)
    test_accuracy, train_seconds = train_seed(args.task, setup, args.epochs, device, args.work_dir)
    result = {
        "test_accuracy": test_accuracy,
        "train_seconds": train_seconds,
        "epochs": args.epochs,
        "train_samples": len(setup.train_loader.dataset),
    }
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
