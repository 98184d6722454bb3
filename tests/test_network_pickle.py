"""NVIDIA StyleGAN2-ADA network pickles (restricted loading) and our teacher checkpoints."""

from __future__ import annotations

import io
import pickle
import pickletools
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from nvidia_pickle_factory import Discriminator, nvidia_network_pickle

from solo_sqsp.teachers import stylegan2
from solo_sqsp.teachers.errors import TeacherFileError, UnsafePickleError
from solo_sqsp.teachers.network_pickle import (
    PersistentRecord,
    load_network_pkl,
    load_teacher_checkpoint,
    save_teacher_checkpoint,
)

NVIDIA_GLOBALS = {
    "torch_utils.persistence._reconstruct_persistent_obj",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.storage._load_from_bytes",
    "collections.OrderedDict",
    "dnnlib.util.EasyDict",
    "builtins.set",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
}


def small_generator(c_dim: int = 0, resolution: int = 32, seed: int = 0) -> stylegan2.Generator:
    """A narrow generator with NVIDIA's CIFAR kwargs layout, its weights and buffers randomised
    so that loading them (not the initial values) is what makes outputs match."""
    torch.manual_seed(seed)
    generator = stylegan2.Generator(
        z_dim=16,
        c_dim=c_dim,
        w_dim=16,
        img_resolution=resolution,
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={
            "channel_base": 256,
            "channel_max": 32,
            "num_fp16_res": 2,
            "conv_clamp": 256,
        },
    )
    with torch.no_grad():
        for tensor in generator.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.1)
    return generator.eval()


def latents(generator: stylegan2.Generator, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rng = torch.Generator().manual_seed(7)
    z = torch.randn(n, generator.z_dim, generator=rng)
    c = torch.zeros(n, generator.c_dim)
    if generator.c_dim:
        c[torch.arange(n), torch.arange(n) % generator.c_dim] = 1
    return z, c


def load_bytes(data: bytes) -> dict[str, Any]:
    return load_network_pkl(io.BytesIO(data))


def pickle_globals(data: bytes) -> tuple[set[str], set[str]]:
    """Globals a pickle names (``module.name``) and the opcodes it uses. STACK_GLOBAL takes its
    two strings from the preceding pushes, which may be memo lookups."""
    names, opcodes, memo, pushed = set(), set(), {}, [None, None]
    for opcode, arg, _ in pickletools.genops(data):
        opcodes.add(opcode.name)
        if opcode.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1]
        elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1]
        elif opcode.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            names.add(f"{pushed[-2]}.{pushed[-1]}")
        elif opcode.name != "FRAME":
            is_get = opcode.name in ("GET", "BINGET", "LONG_BINGET")
            pushed.append(memo.get(arg) if is_get else arg if isinstance(arg, str) else None)
    return names, opcodes


def calling_pickle(module: str, name: str, *args: Any) -> bytes:
    """A protocol-3 pickle whose loading calls ``module.name(*args)``, as an attacker writes it."""
    arguments = pickle.dumps(args, protocol=3)[2:-1]  # without PROTO and STOP
    return b"\x80\x03c" + f"{module}\n{name}\n".encode() + arguments + b"R."


class Calls:
    """Pickles as a call of ``function(*args)`` (the classic pickle exploit)."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args

    def __deepcopy__(self, memo: dict[int, Any]) -> Calls:
        return self  # copy.deepcopy would make the call


# --- loading NVIDIA-structured pickles ---------------------------------------------------------


@pytest.mark.parametrize(
    ("c_dim", "resolution", "protocol"), [(0, 32, 3), (10, 32, 4), (0, 64, 4), (5, 64, 3)]
)
def test_network_pickle_loads_generators_and_data(c_dim: int, resolution: int, protocol: int):
    source = small_generator(c_dim, resolution)
    training_set_kwargs = {"class_name": "training.dataset.ImageFolderDataset", "path": "x.zip"}
    data = nvidia_network_pickle(source, training_set_kwargs=training_set_kwargs, protocol=protocol)

    networks = load_bytes(data)

    assert list(networks) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe"]
    assert networks["training_set_kwargs"] == training_set_kwargs
    assert networks["augment_pipe"] is None
    expected_state = source.state_dict()
    for key in ("G", "G_ema"):
        loaded = networks[key]
        assert isinstance(loaded, stylegan2.Generator)
        assert not loaded.training
        assert not any(p.requires_grad for p in loaded.parameters())
        state = loaded.state_dict()
        assert list(state) == list(expected_state)
        assert all(torch.equal(state[name], expected_state[name]) for name in state)
    G_ema = networks["G_ema"]
    assert (G_ema.z_dim, G_ema.c_dim, G_ema.img_resolution, G_ema.num_ws) == (
        16,
        c_dim,
        resolution,
        source.num_ws,
    )
    z, c = latents(source)
    with torch.no_grad():
        images = G_ema(z, c, noise_mode="const")
        assert images.shape == (3, 3, resolution, resolution)
        assert torch.equal(images, G_ema(z, c, noise_mode="const"))
        assert torch.equal(images, source(z, c, noise_mode="const"))


def test_discriminator_and_augment_pipe_stay_records_of_plain_data():
    source = small_generator(c_dim=4)
    D = Discriminator(c_dim=4, img_resolution=32, img_channels=3)
    augment_pipe = Discriminator(c_dim=0, img_resolution=32, img_channels=3)  # any module record

    networks = load_bytes(nvidia_network_pickle(source, D=D, augment_pipe=augment_pipe))

    record = networks["D"]
    assert isinstance(record, PersistentRecord)
    assert (record.class_name, record.init_args) == ("Discriminator", ())
    assert record.init_kwargs == {"c_dim": 4, "img_resolution": 32, "img_channels": 3}
    assert record.attributes == {"c_dim": 4, "img_resolution": 32, "img_channels": 3}
    assert record.children["fromrgb"].class_name == "Conv2dLayer"
    assert record.children["fromrgb"].attributes["weight_gain"] == pytest.approx(3**-0.5)
    D_state = D.state_dict()
    assert list(record.state_dict()) == list(D_state)
    assert all(torch.equal(record.state_dict()[k], v) for k, v in D_state.items())
    assert isinstance(networks["augment_pipe"], PersistentRecord)


@pytest.mark.parametrize(
    ("protocol", "opcode", "numpy_scalar"),
    [
        (3, "GLOBAL", "numpy.core.multiarray.scalar"),
        (4, "STACK_GLOBAL", "numpy._core.multiarray.scalar"),
    ],
)
def test_factory_writes_nvidias_globals_and_opcodes(protocol: int, opcode: str, numpy_scalar: str):
    names, opcodes = pickle_globals(nvidia_network_pickle(small_generator(), protocol=protocol))

    assert names <= NVIDIA_GLOBALS
    assert {"torch_utils.persistence._reconstruct_persistent_obj", "dnnlib.util.EasyDict"} <= names
    assert numpy_scalar in names
    assert opcode in opcodes
    assert ("builtins.set" in names) == (protocol == 3)  # protocol 4 has EMPTY_SET


# --- hostile input ---------------------------------------------------------------------------


def hostile_calls(marker: Path) -> dict[str, tuple[str, str, tuple[Any, ...]]]:
    """Calls that would create ``marker`` if a pickle's global were resolved and called."""
    return {
        "os.system": ("os", "system", (f"touch {marker}",)),
        "builtins.eval": ("builtins", "eval", (f"open({str(marker)!r}, 'w').close()",)),
        "subprocess.Popen": ("subprocess", "Popen", (["touch", str(marker)],)),
    }


@pytest.mark.parametrize("target", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_hostile_global_is_refused_before_it_runs(tmp_path: Path, target: str):
    marker = tmp_path / "ran"
    module, name, args = hostile_calls(marker)[target]
    payload = calling_pickle(module, name, *args)

    with pytest.raises(UnsafePickleError, match=rf"global {target}\b"):
        load_bytes(payload)
    assert not marker.exists()

    # Control: the same bytes do run the command under the standard unpickler.
    result = pickle.loads(payload)
    if isinstance(result, subprocess.Popen):
        result.wait()
    assert marker.exists()


def test_hostile_global_deep_inside_a_network_pickle_is_refused(tmp_path: Path):
    marker = tmp_path / "ran"
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=3)
    D.init_kwargs["block_kwargs"] = {"x": Calls(subprocess.Popen, ["touch", str(marker)])}
    data = nvidia_network_pickle(small_generator(), D=D, protocol=4)

    with pytest.raises(UnsafePickleError, match=r"global subprocess\.Popen"):
        load_bytes(data)
    assert not marker.exists()


def test_module_source_in_records_is_never_run(tmp_path: Path):
    marker = tmp_path / "ran"
    module_src = f"open({str(marker)!r}, 'w').write('networks.py was executed')\n"
    source = small_generator()

    networks = load_bytes(nvidia_network_pickle(source, module_src=module_src))

    assert not marker.exists()
    assert torch.equal(networks["G_ema"].mapping.fc0.weight, source.mapping.fc0.weight)
    exec(compile(module_src, "networks.py", "exec"), {})  # control: the source is live
    assert marker.exists()


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_tensor_view_beyond_its_storage_is_refused():
    storage = torch.zeros(4).storage()
    huge_view = Calls(torch._utils._rebuild_tensor_v2, storage, 0, (10**12,), (1,), False, {})

    with pytest.raises(TeacherFileError, match="reaches element"):
        load_bytes(pickle.dumps({"G_ema": huge_view}, protocol=4))


def test_storage_blob_declaring_more_data_than_it_holds_is_refused():
    class ForgedBlob(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            return ("storage", torch.FloatStorage, "0", "cpu", 2**40, None) if obj == "S" else None

    stream = io.BytesIO()
    for part in (torch.serialization.MAGIC_NUMBER, torch.serialization.PROTOCOL_VERSION, {}):
        pickle.dump(part, stream, protocol=2)
    ForgedBlob(stream, protocol=2).dump("S")
    pickle.dump(["0"], stream, protocol=2)
    stream.write((2**40).to_bytes(8, "little") + bytes(16))
    forged = Calls(torch.storage._load_from_bytes, stream.getvalue())

    with pytest.raises(
        TeacherFileError, match=r"declares 4398046511112 bytes of data but holds 24"
    ):
        load_bytes(pickle.dumps({"G_ema": forged}, protocol=4))


def test_shared_module_records_are_refused():
    generator = small_generator()
    generator.mapping.fc1 = generator.mapping.fc0  # a DAG: walking it could blow up

    with pytest.raises(TeacherFileError, match="appears twice"):
        load_bytes(nvidia_network_pickle(generator))


# --- other kinds of files ----------------------------------------------------------------------


def test_empty_and_truncated_pickles_are_refused(tmp_path: Path):
    data = nvidia_network_pickle(small_generator())
    with pytest.raises(TeacherFileError, match="empty"):
        load_bytes(b"")
    for length in (1, 2, 100, len(data) // 3, len(data) - 1):
        with pytest.raises(TeacherFileError, match=r"truncated or corrupt|pickle header"):
            load_bytes(data[:length])
    path = tmp_path / "network-snapshot.pkl"
    path.write_bytes(data[: len(data) // 2])
    with open(path, "rb") as stream, pytest.raises(TeacherFileError) as raised:
        load_network_pkl(stream)
    assert str(raised.value).startswith(f"{path}: the network pickle is truncated or corrupt")


def test_random_bytes_are_refused():
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
    with pytest.raises(TeacherFileError, match="not with a pickle header"):
        load_bytes(bytes(noise.to(torch.uint8).tolist()))


def test_pickles_of_other_kinds_are_refused(tmp_path: Path):
    with pytest.raises(TeacherFileError, match=r"keys \['a'\] but no 'G_ema'"):
        load_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(TeacherFileError, match="holds a list"):
        load_bytes(pickle.dumps([1, 2]))
    with pytest.raises(TeacherFileError, match="'G_ema' is a int"):
        load_bytes(pickle.dumps({"G_ema": 3}))
    zip_checkpoint, legacy_checkpoint = io.BytesIO(), io.BytesIO()
    torch.save({"state_dict": {"w": torch.ones(2)}}, zip_checkpoint)
    torch.save({"w": torch.ones(2)}, legacy_checkpoint, _use_new_zipfile_serialization=False)
    with pytest.raises(TeacherFileError, match="zip archive"):
        load_bytes(zip_checkpoint.getvalue())
    with pytest.raises(TeacherFileError, match=r"legacy torch\.save"):
        load_bytes(legacy_checkpoint.getvalue())


def test_records_that_are_no_stylegan2_generator_are_refused():
    discriminator = Discriminator(c_dim=0, img_resolution=32, img_channels=3)
    with pytest.raises(TeacherFileError, match="'G_ema' is a 'Discriminator' network"):
        load_bytes(nvidia_network_pickle(discriminator))

    stylegan3_like = small_generator()
    stylegan3_like.synthesis.input = Discriminator(c_dim=0, img_resolution=4, img_channels=3)
    with pytest.raises(
        TeacherFileError, match=r"does not have: \[synthesis.input \(Discriminator\)"
    ):
        load_bytes(nvidia_network_pickle(stylegan3_like))

    with pytest.raises(TeacherFileError, match="version 5"):
        load_bytes(nvidia_network_pickle(small_generator(), version=5))


def test_tensors_that_do_not_fit_the_recorded_kwargs_are_named():
    generator = small_generator()
    del generator.mapping.fc1
    generator.synthesis.b8.register_buffer("extra", torch.zeros(2))
    generator.synthesis.b4.const = torch.nn.Parameter(torch.zeros(32, 2, 2))

    with pytest.raises(TeacherFileError) as raised:
        load_bytes(nvidia_network_pickle(generator))
    message = str(raised.value)
    assert "missing keys [mapping.fc1.weight, mapping.fc1.bias]" in message
    assert "unexpected keys [synthesis.b8.extra]" in message
    assert "shape mismatches [synthesis.b4.const (32, 2, 2) (expected (32, 4, 4))]" in message


# --- our teacher checkpoints -------------------------------------------------------------------


def test_teacher_checkpoint_round_trip(tmp_path: Path):
    source = small_generator(c_dim=3)
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"an older file, replaced atomically")

    save_teacher_checkpoint(source, path, extra={"origin": "cifar10.pkl", "kimg": 25000})
    loaded = load_teacher_checkpoint(path)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt"]
    assert torch.load(path, weights_only=True)["extra"] == {"origin": "cifar10.pkl", "kimg": 25000}
    assert isinstance(loaded, stylegan2.Generator)
    assert not loaded.training
    z, c = latents(source)
    with torch.no_grad():
        assert torch.equal(loaded(z, c, noise_mode="const"), source(z, c, noise_mode="const"))


def test_teacher_checkpoint_of_a_loaded_network_pickle_round_trips(tmp_path: Path):
    G_ema = load_bytes(nvidia_network_pickle(small_generator(c_dim=2, resolution=64)))["G_ema"]
    save_teacher_checkpoint(G_ema, tmp_path / "teacher.pt")
    loaded = load_teacher_checkpoint(tmp_path / "teacher.pt")
    z, c = latents(G_ema)
    with torch.no_grad():
        assert torch.equal(loaded(z, c, noise_mode="const"), G_ema(z, c, noise_mode="const"))


def test_checkpoint_holding_arbitrary_objects_is_refused_without_running_them(tmp_path: Path):
    marker = tmp_path / "ran"
    path = tmp_path / "teacher.pt"
    torch.save(
        {"format": "solo-sqsp-teacher", "x": Calls(eval, f"open({str(marker)!r}, 'w')")}, path
    )

    with pytest.raises(UnsafePickleError, match="objects other than tensors and plain data"):
        load_teacher_checkpoint(path)
    assert not marker.exists()


def test_files_that_are_no_teacher_checkpoint_are_refused(tmp_path: Path):
    path = tmp_path / "teacher.pt"
    path.write_bytes(b"")
    with pytest.raises(TeacherFileError, match="empty"):
        load_teacher_checkpoint(path)
    torch.save({"state_dict": {}}, path)
    with pytest.raises(
        TeacherFileError, match="holds a dict with format None, not a teacher checkpoint"
    ):
        load_teacher_checkpoint(path)
    path.write_bytes(nvidia_network_pickle(small_generator()))
    with pytest.raises(UnsafePickleError, match="load_network_pkl"):
        load_teacher_checkpoint(path)
    with pytest.raises(TeacherFileError, match="not found"):
        load_teacher_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_extra_must_be_plain_data(tmp_path: Path):
    with pytest.raises(TypeError, match=r"extra\['epochs'\] holds a set"):
        save_teacher_checkpoint(small_generator(), tmp_path / "t.pt", extra={"epochs": {1, 2}})
    assert list(tmp_path.iterdir()) == []
