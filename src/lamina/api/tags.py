"""Handlers: TagResource, UntagResource, ListTags."""

from __future__ import annotations

from typing import Any

from lamina.api.context import ApiContext, Handler
from lamina.control.tags import TagService


def operations(ctx: ApiContext) -> dict[str, Handler]:
    tags = TagService(ctx.domain)

    def tag_resource(params: dict[str, Any]) -> None:
        tags.tag(params["Resource"], params["Tags"])

    def untag_resource(params: dict[str, Any]) -> None:
        tags.untag(params["Resource"], params["TagKeys"])

    def list_tags(params: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": tags.list_tags(params["Resource"])}

    return {
        "TagResource": tag_resource,
        "UntagResource": untag_resource,
        "ListTags": list_tags,
    }
