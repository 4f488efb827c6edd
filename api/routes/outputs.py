"""Build outputs of runs: list, download (streamed, counted, checksum in a header), and retention cleanup."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Route

from api.endpoint import endpoint, path_id
from api.errors import ApiError, not_found
from api.views import output_view
from runner import queries
from runner.artifacts import ArtifactKeyError, get_store
from runner.models import BuildOutput
from runner.timestamps import utcnow


@endpoint("viewer")
def list_outputs(request: Request) -> JSONResponse:
    run_id = path_id(request, "run_id", "run")
    if queries.get_run(run_id) is None:
        raise not_found(f"run {run_id}")
    outputs = [output_view(output) for output in queries.build_outputs(run_id)]
    return JSONResponse({"success": True, "build_outputs": outputs, "count": len(outputs)})


@endpoint("operator")
def download(request: Request) -> FileResponse:
    output_id = path_id(request, "output_id", "output")
    output = BuildOutput.get_or_none(BuildOutput.id == output_id)
    if output is None:
        raise not_found(f"output {output_id}")
    if output.output_type != "zip" or not output.file_path:
        raise ApiError(400, f"output {output_id} is an image; it has no file to download", code="no_file",
                       error="Download error")
    # The file is found from the record's store key, never from anything in the request.
    gone = ApiError(410, f"output {output_id} has expired and was cleaned up", code="gone", error="Download error")
    try:
        path = Path(get_store().locate(output.file_path))
    except ArtifactKeyError:
        raise gone from None
    expired = output.expires_at is not None and output.expires_at < utcnow()
    if output.cleaned_at is not None or not path.is_file():
        raise gone
    BuildOutput.update(download_count=BuildOutput.download_count + 1).where(BuildOutput.id == output_id).execute()
    headers = {"X-Checksum-SHA256": output.checksum_sha256 or "", "X-Expired": "true" if expired else "false"}
    return FileResponse(path, media_type="application/zip", filename=path.name, headers=headers,
                        content_disposition_type="attachment")


@endpoint("admin")
def cleanup(request: Request) -> JSONResponse:
    from runner.cleanup import cleanup_expired

    return JSONResponse({"success": True, "cleanup_result": cleanup_expired()})


routes = [
    Route("/runs/{run_id:int}/outputs", list_outputs, methods=["GET"]),
    Route("/outputs/{output_id:int}/download", download, methods=["GET"]),
    Route("/cleanup", cleanup, methods=["POST"]),
]
