def test_a_trusted_context_reads_the_nodes_own_tables_without_copying():
    from icn_node.scheduler.locality import BlobRegistry, LocalityContext

    locations = {bytes(32): "did:key:z6MkAny"}
    rtts = {"did:key:z6MkAny": 5.0}
    ctx = LocalityContext.trusted(
        region="eu",
        blobs=BlobRegistry(),
        rtt_ms=rtts,
        bandwidth_mbps={},
        task_locations=locations,
    )
    assert ctx.task_locations is locations and ctx.rtt_ms is rtts and ctx.region == "eu"
    checked = LocalityContext(region="eu", rtt_ms=rtts, task_locations=locations)
    assert ctx == checked
