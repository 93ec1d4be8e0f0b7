"""The live view's kill menu on a lab of two clusters: every target names its cluster, kills go to that cluster,
and each cluster can be taken down whole (stage 6)."""

from meshlab.backends.base import NodeInfo, PodInfo, ProxyInfo
from meshlab.widgets import LiveView
from meshlab.widgets.live import kill_options


class FakeFleetLab:
    """Two clusters with the same node names and a reviews pod each, a gateway per cluster; records kills."""

    def __init__(self):
        self.kills = []

    def pods(self):
        def pod(name, app, node, cluster):
            return PodInfo(name, "default", node, "127.9.1.10", True, "Running", {"app": app, "version": "v1"},
                           cluster=cluster)
        return [pod("frontend-a", "frontend", "node-1", "cluster-1"), pod("reviews-a", "reviews", "node-2", "cluster-1"),
                pod("reviews-b", "reviews", "node-1", "cluster-2")]

    def nodes(self):
        return [NodeInfo(n, "127.9.1.1", True, cluster=c) for c in ("cluster-1", "cluster-2") for n in ("node-1", "node-2")]

    def proxies(self):
        return [ProxyInfo(f"gw-{c[-1]}", "gateway", f"gw-{c[-1]}", "node-1", "running", cluster=c)
                for c in ("cluster-1", "cluster-2")]

    def kill(self, pod=None, node=None, proxy=None, cluster=None):
        self.kills.append({k: v for k, v in (("pod", pod), ("node", node), ("proxy", proxy), ("cluster", cluster)) if v})
        return ["x"]

    def restore(self):
        pass


def test_every_target_names_its_cluster_and_each_cluster_can_go_whole():
    view = LiveView(FakeFleetLab())
    options = dict(view.kill_target.options)
    assert options["pod reviews-a in cluster-1"] == ("pod", "reviews-a", "cluster-1")
    assert options["pod reviews-b in cluster-2"] == ("pod", "reviews-b", "cluster-2")
    assert options["node node-1 in cluster-2"] == ("node", "node-1", "cluster-2")  # node-1 is in both: two choices
    assert options["node node-1 in cluster-1"] == ("node", "node-1", "cluster-1")
    assert options["pod gw-2 in cluster-2"] == ("pod", "gw-2", "cluster-2")
    assert options["proxy gw-2 (gateway) in cluster-2"] == ("proxy", "gw-2", "cluster-2")
    assert [label for label in options if label.startswith("whole")] == [
        "whole cluster cluster-1 (every node)", "whole cluster cluster-2 (every node)"]
    assert view.kill_target.value == ("pod", "frontend-a", "cluster-1")  # a single pod first, never a whole cluster


def test_a_kill_goes_to_the_cluster_of_its_target():
    lab = FakeFleetLab()
    view = LiveView(lab)
    for value in [("node", "node-1", "cluster-2"), ("pod", "reviews-b", "cluster-2"), ("cluster", "cluster-1", "cluster-1")]:
        view.kill_target.value = value
        view.kill_button.click()
        assert view.wait(10)
    assert lab.kills == [{"node": "node-1", "cluster": "cluster-2"}, {"pod": "reviews-b", "cluster": "cluster-2"},
                         {"cluster": "cluster-1"}]
    assert dict(view.rows)["Faults"] == "killed node node-1 in cluster-2; killed pod reviews-b in cluster-2; " \
                                       "killed cluster cluster-1"


def test_a_lab_of_one_cluster_keeps_its_plain_menu():
    class OneCluster(FakeFleetLab):
        def pods(self):
            return [PodInfo("reviews-a", "default", "node-1", "127.9.1.10", True, "Running", {"app": "reviews"})]

        def nodes(self):
            return [NodeInfo("node-1", "127.9.1.1", True)]

        def proxies(self):
            return []

    view = LiveView(OneCluster())
    assert list(view.kill_target.options) == [("pod reviews-a", ("pod", "reviews-a")), ("node node-1", ("node", "node-1"))]
    assert kill_options(view.topology) == list(view.kill_target.options)
