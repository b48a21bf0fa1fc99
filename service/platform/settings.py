"""Settings of the API process and the workers, from `AGILEGAN_*` environment variables.

Validated once at process start and passed down; nothing below `service/` and `workers/` reads the
environment. Every setting is listed in the README's configuration table.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.platform.contract import QUEUES
from service.portrait.exemplar_files import MIN_EXEMPLARS

ROLES = ("client", "operator")


class Settings(BaseSettings):
    """One settings object for API and workers (they share Redis, the data directory and limits)."""

    model_config = SettingsConfigDict(env_prefix="AGILEGAN_", env_ignore_empty=True, extra="ignore", frozen=True)

    # --- where things are
    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes of `agilegan serve`")
    trusted_proxies: str = Field(
        "",
        description="comma-separated addresses (or CIDRs) of reverse proxies whose X-Forwarded-For / "
        "X-Forwarded-Proto the API believes; empty = none (the client address is the connection's)",
    )

    # --- auth
    api_keys: str = Field("", description="comma-separated key:role pairs (role: client or operator)")
    api_keys_file: Path | None = Field(None, description="file of 'sha256-hex-of-key:role' lines")
    auth_disabled: bool = False

    # --- request limits
    max_upload_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    max_video_bytes: int = Field(200 * 1024 * 1024, ge=1024, description="POST /v1/animate body")
    max_video_seconds: float = Field(60.0, gt=0)
    max_video_frames: int = Field(1800, ge=1)
    max_video_frame_pixels: int = Field(1920 * 1080, ge=1024)
    max_pixels: int = Field(40_000_000, ge=10_000)
    rate_limit_per_minute: int = Field(120, ge=0, description="stylize requests per key per minute; 0 = off")
    failed_auth_per_minute: int = Field(
        30, ge=0, description="failed authentications per source address per minute before 429; 0 = off"
    )
    max_queue_depth: int = Field(200, ge=1, description="queued stylize jobs before 503")

    # --- style training uploads
    max_style_upload_bytes: int = Field(512 * 1024 * 1024, ge=1024, description="body cap of POST /v1/styles")
    max_style_files: int = Field(500, ge=1)
    min_exemplars: int = Field(MIN_EXEMPLARS, ge=4, description="usable exemplars a style needs")
    train_minutes: float = Field(60.0, gt=0, description="default time budget of a training job")
    train_lpips: Literal["auto", "off"] = Field(
        "auto",
        description="auto: a train worker installs LPIPS-VGG at start when the registry lacks it (bounded by "
        "the download timeout), and training uses it; off: only an installed one is used",
    )
    train_micro_batch: int = Field(
        0, ge=0, description="generator samples per training pass (0 = the whole batch); less memory, same update"
    )

    # --- jobs
    job_timeout_s: int = Field(300, ge=5, description="hard cap on one stylize job's run time")
    job_retries: int = Field(2, ge=0, le=10, description="re-runs after a worker crash or transient error")
    result_ttl_s: int = Field(3600, ge=60, description="results and inputs are deleted after this")
    idempotency_ttl_s: int = Field(86400, ge=60)

    # --- where job files live (service/platform/objectstore.py): the data directory, or an S3-compatible store
    storage: Literal["local", "s3"] = Field(
        "local", description="local: the data directory; s3: uploads and results in an S3-compatible bucket"
    )
    s3_endpoint_url: str | None = Field(None, description="e.g. http://seaweedfs:8333 (unset: AWS)")
    s3_bucket: str = Field("agilegan", min_length=3, max_length=63)
    s3_prefix: str = Field("", description="key prefix inside the bucket (several deployments in one)")
    s3_region: str = "us-east-1"
    s3_access_key: str | None = None
    s3_secret_key: str | None = Field(None, repr=False)
    s3_timeout_s: float = Field(10.0, gt=0, le=120, description="connect/read timeout of one store request")
    s3_public_endpoint_url: str | None = Field(
        None, description="the store's endpoint as clients reach it, for presigned result URLs (unset: the endpoint)"
    )
    result_delivery: Literal["stream", "presigned"] = Field(
        "stream",
        description="storage=s3: GET …/result streams the object through the API, or redirects (307) to a "
        "presigned URL of the store that expires after presign_ttl_s",
    )
    presign_ttl_s: int = Field(300, ge=10, le=86400)
    registry_sync_s: float = Field(
        10.0, gt=0, le=3600, description="storage=s3: how often each host pulls the registry's published bundles"
    )

    # --- webhooks (service/platform/webhooks.py, workers/webhook_sender.py)
    webhook_allow: str = Field(
        "", description="comma-separated CIDRs webhooks may call although not public (e.g. 10.0.0.0/8); default none"
    )
    webhook_timeout_s: float = Field(5.0, gt=0, le=60, description="time cap of one delivery (connect to answer)")
    webhook_backoff_s: float = Field(1.0, gt=0, le=600, description="wait before the first retry; doubles")
    webhook_retry_window_s: float = Field(3600.0, gt=0, le=7 * 86400, description="retries stop this long after")
    webhook_threads: int = Field(2, ge=0, le=32, description="delivery threads per worker process (0: none)")

    # --- alignment (API: detection and landmarks; worker: the FFHQ crop)
    align_transform_size: int = Field(
        1024,
        ge=256,
        description="side of the FFHQ quad transform before the resize to the crop size (the reference's 4096 "
        "is 20x slower and 54-59 dB PSNR from 1024 on portraits: README 'Worker CPU')",
    )
    min_face_size: int = Field(128, ge=16)
    max_faces: int = Field(8, ge=1, le=32, description="faces=all: at most this many faces stylized in one photo")
    landmarks_path: str | None = None
    detect_concurrency: int = Field(
        0, ge=0, le=256, description="face detections the API process runs at once; 0 = two per CPU core, at most 8"
    )

    # --- public weights (agilegan styles install, and the first `agilegan up`)
    first_run_style: str = Field(
        "toonify", description="public style `agilegan up` installs when the registry has none; '' = never"
    )
    download_mirror: str | None = Field(None, description="base URL holding the release files (else their origin)")
    download_timeout_s: float = Field(15.0, gt=0, le=600, description="connect/read timeout of weight downloads")

    ready_queues: str = Field(
        "stylize", description="queues that need a live worker for GET /readyz (comma-separated): the API's role"
    )

    # --- workers
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    torch_threads: int = Field(0, ge=0, description="0 = torch's default")
    cpu_threads: int = Field(
        0, ge=0, le=256, description="threads for a batch's decoding, crops and result encoding (0 = the host's cores)"
    )
    png_level: int = Field(1, ge=0, le=9, description="zlib level of PNG results (1: 4x faster than 6, 15% larger)")
    jpeg_encoder: Literal["auto", "pillow", "nvimgcodec"] = Field(
        "auto",
        description="JPEG results: auto = on the GPU (nvJPEG through nvImageCodec) when it is installed and "
        "answers at worker start, else Pillow in the CPU pool; nvimgcodec = required (libjpeg-turbo on the CPU)",
    )
    video_batch: int = Field(8, ge=1, le=64, description="video frames per encoder/generator pass")
    max_batch: int = Field(
        0, ge=0, le=64, description="stylize jobs a worker takes at once (0 = auto: 8 on CUDA, 1 on the CPU)"
    )
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="how long a batch waits for more jobs")
    inference_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="stylize networks: auto = bf16 autocast on CUDA, fp32 elsewhere; fp32 turns it off"
    )
    allow_tf32: bool = Field(
        False, description="inference_precision=fp32 on CUDA: allow TF32 convolutions and matmuls (faster, ~1e-3)"
    )
    compile: Literal["auto", "off", "default", "reduce-overhead", "max-autotune"] = Field(
        "auto",
        description="torch.compile the encoder and generator when the worker starts (never per request): "
        "default = inductor kernels, reduce-overhead = + CUDA graphs, max-autotune = + autotuning (slowest start); "
        "auto = reduce-overhead on CUDA, off on the CPU",
    )
    compile_cache_dir: Path | None = Field(
        None,
        description="where compiled kernels are kept across worker restarts (inductor's cache); "
        "empty = compile-cache in the data folder",
    )
    compile_buckets: str = Field(
        "",
        description="batch sizes compiled, comma-separated (a batch is padded up to one); "
        "empty = powers of two up to the max batch on CUDA, 1 on the CPU",
    )
    channels_last: Literal["auto", "on", "off", "measure"] = Field(
        "auto",
        description="NHWC feature maps: auto = on for the CPU (measured faster), timed both ways at worker "
        "start on CUDA; measure = timed on any device",
    )
    fold_blur: Literal["auto", "on", "off", "measure"] = Field(
        "auto",
        description="upsampling convolutions with their blur folded into the kernel (one pass, 4x its "
        "multiply-adds): auto = off for the CPU (bound by multiply-adds), timed both ways at worker start on CUDA; "
        "measure = timed on any device",
    )
    video_chunk_frames: int = Field(16, ge=1, le=1024, description="frames per resumable chunk of a video job")
    worker_nice: int = Field(
        0,
        ge=0,
        le=19,
        description="CPU niceness the worker adds to itself: on a host where API and workers share CPU "
        "cores, the API's request latency goes first (`agilegan up` uses 10)",
    )
    style_cache_size: int = Field(4, ge=1, description="style generators kept loaded per worker")
    style_cache_bytes: int = Field(
        0, ge=0, description="device bytes the loaded styles may take (measured per style; 0 = only the count)"
    )
    heartbeat_interval_s: float = Field(5.0, gt=0)
    heartbeat_ttl_s: int = Field(20, ge=5, description="a job whose worker stops heartbeating is requeued after this")
    maintenance_interval_s: int = Field(10, ge=1, description="how often workers look for abandoned jobs")
    worker_ttl_s: int = Field(30, ge=16)

    @field_validator("compile_buckets")
    @classmethod
    def _check_buckets(cls, value: str) -> str:
        try:
            sizes = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"compile_buckets must be comma-separated batch sizes, got {value!r}") from None
        if any(not 1 <= b <= 64 for b in sizes):
            raise ValueError(f"compile_buckets must be batch sizes in 1…64, got {value!r}")
        return ",".join(str(b) for b in sorted(set(sizes)))

    @property
    def compile_bucket_sizes(self) -> tuple[int, ...]:
        """The compile buckets asked for, ascending; () = the default for the device."""
        return tuple(int(v) for v in self.compile_buckets.split(",") if v)

    @field_validator("webhook_allow")
    @classmethod
    def _check_allow(cls, value: str) -> str:
        import ipaddress

        for cidr in filter(None, (c.strip() for c in value.split(","))):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"AGILEGAN_WEBHOOK_ALLOW: not a CIDR: {cidr!r}") from None
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: str) -> str:
        for pair in filter(None, (p.strip() for p in value.split(","))):
            key, _, role = pair.rpartition(":")
            if not key or role not in ROLES:
                raise ValueError(f"AGILEGAN_API_KEYS entries are key:role with role in {ROLES}")
            if len(key) < 16:
                raise ValueError("API keys must be at least 16 characters")
        return value

    @field_validator("ready_queues")
    @classmethod
    def _check_ready_queues(cls, value: str) -> str:
        names = [q.strip() for q in value.split(",") if q.strip()]
        if not names or any(q not in QUEUES for q in names):
            raise ValueError(f"AGILEGAN_READY_QUEUES: a comma-separated subset of {list(QUEUES)}")
        return value

    def video_limits(self):
        """The video limits of the API's check and the worker's decode (service.portrait.media.video_io.VideoLimits)."""
        from service.portrait.media.video_io import VideoLimits  # PyAV: only for the processes that handle video

        return VideoLimits(self.max_video_seconds, self.max_video_frames, self.max_video_frame_pixels)

    @property
    def registry_dir(self) -> Path:
        return self.data_dir / "registry"

    @property
    def compile_cache(self) -> Path:
        return self.compile_cache_dir or self.data_dir / "compile-cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()
