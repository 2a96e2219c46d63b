"""Oracle for checkpoint I/O: PyTorch writes .pth / safetensors files for Swift to read, and checks the
files Swift wrote with torch.load(weights_only=True) and the safetensors library.

Usage: python checkpoint_oracle.py write DIR
       python checkpoint_oracle.py verify DIR
"""
import collections
import json
import os
import sys
import zipfile

import torch
from safetensors.torch import load_file, save_file

mode, d = sys.argv[1], sys.argv[2]
torch.manual_seed(11)


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.norm = torch.nn.BatchNorm2d(4)  # int64 buffer num_batches_tracked
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)])


def plain_dict():
    base = torch.randn(6, 5)
    return {
        "f32": torch.randn(3, 4),
        "f16": torch.randn(2, 3).half(),
        "bf16": torch.randn(2, 3).bfloat16(),
        "f64": torch.randn(2).double(),
        "i64": torch.arange(-3, 9, dtype=torch.int64).view(3, 4),
        "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),  # non-contiguous view: strides (1, 5)
        "shared_base": base,
        "shared_view": base[2:4, 1:],  # same storage, offset 11
    }


if mode == "write":
    model = Small()
    with torch.no_grad():
        model.norm.running_mean.uniform_(-1, 1)
        model.norm.num_batches_tracked.fill_(17)
    sd = model.state_dict()
    torch.save(sd, f"{d}/state_dict.pth")
    plain = plain_dict()
    torch.save(plain, f"{d}/plain.pth")
    nested = {"model": sd, "epoch": 3, "lr": 1e-4, "name": "run-a", "milestones": [5, 10], "flags": (True, None)}
    torch.save(nested, f"{d}/nested.pth")
    # A training checkpoint as PyTorch code writes one: the optimizer's state dict has int keys, lists
    # and tuples in its param groups, and tensors shared with nothing; and a list mixing every kind.
    trained = Small()  # its own: the step changes its weights, which `sd` must not see
    opt = torch.optim.AdamW(trained.parameters(), lr=1e-3)
    for p in trained.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    torch.save({"model": trained.state_dict(), "optimizer": opt.state_dict(), "epoch": 1}, f"{d}/training.pth")
    torch.save([torch.ones(2), (torch.zeros(1), {"a": [1, 2.5, "s", None, True], 7: -3}), [[[]]]], f"{d}/mixed.pth")

    expected = {}
    for k, v in sd.items():
        expected[f"state_dict/{k}"] = v
        expected[f"nested/model.{k}"] = v
    for k, v in plain.items():
        expected[f"plain/{k}"] = v
    save_file({k: v.clone().contiguous() for k, v in expected.items()}, f"{d}/expected.safetensors")
    with open(f"{d}/keys.json", "w") as f:
        json.dump({"state_dict": list(sd.keys()), "plain": list(plain.keys())}, f)

    # safetensors written by the reference library, with metadata.
    ref = {k: v.clone().contiguous() for k, v in plain.items() if k not in ("shared_base", "shared_view", "transposed")}
    save_file(ref, f"{d}/reference.safetensors", metadata={"delta_type": "lora", "rank": "4"})

    # A pickle that would run a shell command if it were unpickled by Python's pickle.
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {d}/pwned",))

    torch.save({"w": torch.ones(2), "payload": Evil()}, f"{d}/evil.pth")

    # Damaged archives: pickle cut short; a storage record missing.
    with zipfile.ZipFile(f"{d}/state_dict.pth") as src:
        names = src.namelist()
        for out_name, damage in (("truncated_pickle.pth", "pickle"), ("missing_storage.pth", "storage")):
            with zipfile.ZipFile(f"{d}/{out_name}", "w", zipfile.ZIP_STORED) as dst:
                for n in names:
                    data = src.read(n)
                    if damage == "pickle" and n.endswith("data.pkl"):
                        data = data[: len(data) // 2]
                    if damage == "storage" and n.endswith("/data/0"):
                        continue
                    dst.writestr(n, data)
    # Forged files whose sizes overflow 64-bit arithmetic (hostile, or corrupt): a storage of 2**62 floats;
    # a tensor of size and stride 2**40; a safetensors shape of 2**61 floats. Each must be a named error.
    import io
    import pickle
    import struct

    def forged_pth(name, numel, size, stride, offset=0):
        class Storage:
            pass

        class Forger(pickle.Pickler):
            def persistent_id(self, obj):
                return ("storage", torch.FloatStorage, "0", "cpu", numel) if isinstance(obj, Storage) else None

        class Forged:
            def __reduce__(self):
                return (torch._utils._rebuild_tensor_v2, (Storage(), offset, size, stride, False, collections.OrderedDict()))

        buf = io.BytesIO()
        Forger(buf, protocol=2).dump({"w": Forged()})
        with zipfile.ZipFile(f"{d}/{name}", "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/data/0", b"\0" * 16)
            z.writestr("archive/version", "3\n")

    # Pickles that hold themselves or nest thousands deep: walking or freeing such a value recursively
    # overflows the stack, so each must be refused while it is read.
    def raw_pth(name, pkl):
        with zipfile.ZipFile(f"{d}/{name}", "w", zipfile.ZIP_STORED) as z:
            z.writestr("archive/data.pkl", pkl)
            z.writestr("archive/byteorder", "little")
            z.writestr("archive/version", "3\n")

    looped = {}
    looped["self"] = looped
    raw_pth("self_dict.pth", pickle.dumps(looped, protocol=2))
    a, b = [], []
    b.append(a)
    a.append(b)
    raw_pth("cycle_lists.pth", pickle.dumps({"a": a}, protocol=2))
    raw_pth("deep_tuple.pth", b"\x80\x02N" + b"\x85" * 50000 + b".")  # (((None,),),)… by TUPLE1
    raw_pth("deep_list.pth", b"\x80\x02" + b"]" * 50000 + b"a" * 49999 + b".")  # [[[…]]] by APPEND
    shared = {"w": torch.ones(2)}
    torch.save({"model": shared, "ema": shared}, f"{d}/shared_dict.pth")  # legitimate: both keep their copy

    forged_pth("huge_storage.pth", 2**62, (4,), (1,))
    forged_pth("huge_stride.pth", 4, (2**40,), (2**40,))
    forged_pth("huge_numel.pth", 4, (2**40, 2**40), (0, 0))  # stride 0: one element addressed, 2**80 counted
    forged_pth("negative_offset.pth", 4, (0,), (1,), offset=-5)  # empty, so no element checks the offset
    header = json.dumps({"w": {"dtype": "F32", "shape": [2**61], "data_offsets": [0, 4]}}).encode()
    with open(f"{d}/huge_shape.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    # Empty (a leading 0), but its contiguous strides would overflow.
    header = json.dumps({"w": {"dtype": "F32", "shape": [0, 2**62, 2**62], "data_offsets": [0, 0]}}).encode()
    with open(f"{d}/empty_huge_shape.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
    print("written")

elif mode == "verify":
    failures = []
    expected = load_file(f"{d}/expected.safetensors")

    def same(name, got, want):
        if got.dtype != want.dtype or got.shape != want.shape or not torch.equal(got, want):
            failures.append(f"{name}: got {got.dtype} {tuple(got.shape)}, want {want.dtype} {tuple(want.shape)}")

    sd = torch.load(f"{d}/swift_state_dict.pth", weights_only=True)
    if not isinstance(sd, collections.OrderedDict):
        failures.append(f"swift_state_dict.pth holds {type(sd).__name__}, not OrderedDict")
    keys = json.load(open(f"{d}/keys.json"))
    if list(sd.keys()) != keys["state_dict"]:
        failures.append(f"key order differs: {list(sd.keys())}")
    for k in keys["state_dict"]:
        same(f"state_dict/{k}", sd[k], expected[f"state_dict/{k}"])
    # Loads into the module it came from, as a user would.
    Small().load_state_dict(sd)

    plain = torch.load(f"{d}/swift_plain.pth", weights_only=True)
    for k in keys["plain"]:
        same(f"plain/{k}", plain[k], expected[f"plain/{k}"])

    nested = torch.load(f"{d}/swift_nested.pth", weights_only=True)
    if nested.get("epoch") != 3 or nested.get("name") != "run-a" or nested.get("milestones") != [5, 10]:
        failures.append(f"nested scalars: {({k: v for k, v in nested.items() if k != 'model'})}")
    if abs(nested.get("lr", 0) - 1e-4) > 1e-18:
        failures.append("nested lr")
    for k in keys["state_dict"]:
        same(f"nested/model.{k}", nested["model"][k], expected[f"nested/model.{k}"])

    st = load_file(f"{d}/swift.safetensors")
    for k in keys["plain"]:
        same(f"safetensors/{k}", st[k], expected[f"plain/{k}"].contiguous())
    from safetensors import safe_open

    with safe_open(f"{d}/swift.safetensors", "pt") as f:
        if f.metadata() != {"backbone": "vit_b", "image_size": "448"}:
            failures.append(f"metadata {f.metadata()}")

    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("verified")
