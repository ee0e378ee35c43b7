//! The layered layout: layers, routes, and no edge under a node, on the billing graph and on
//! random DAGs.

use proptest::prelude::*;

use super::*;

/// Whether `segment` (straight, or a gap curve inside the box of its ends) comes within a node
/// other than the edge's own ends.
fn check(sizes: &[NodeSize], edges: &[(usize, usize)]) -> Layout {
    let layout = layered(sizes, edges, &vec![60.0; edges.len()], Spacing::default());
    let eps = 1e-6;
    // Nodes do not overlap.
    for (i, a) in layout.nodes.iter().enumerate() {
        for b in &layout.nodes[i + 1..] {
            let apart =
                a.x + a.w <= b.x + eps || b.x + b.w <= a.x + eps || a.y + a.h <= b.y + eps || b.y + b.h <= a.y + eps;
            assert!(apart, "nodes overlap: {a:?} {b:?}");
        }
    }
    for route in &layout.routes {
        let (from, to) = (layout.nodes[route.from], layout.nodes[route.to]);
        assert!(from.x + from.w < to.x, "edges go left to right");
        let (first, last) = (route.points[0], *route.points.last().unwrap());
        assert!(
            first.0 == from.x + from.w && first.1 > from.y && first.1 < from.y + from.h,
            "leaves from's right side"
        );
        assert!(last.0 == to.x && last.1 > to.y && last.1 < to.y + to.h, "arrives on to's left side");
        for (k, pair) in route.points.windows(2).enumerate() {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            if k % 2 == 0 {
                assert!((y0 - y1).abs() < eps, "inside a column the route is straight");
            }
            // The segment (or the curve, inside the box of its ends) must not enter any node
            // but at the ends of the edge itself.
            let (lx, hx, ly, hy) = (x0.min(x1), x0.max(x1), y0.min(y1), y0.max(y1));
            for (i, n) in layout.nodes.iter().enumerate() {
                let own = (i == route.from && k == 0) || (i == route.to && k == route.points.len() - 2);
                let (nx, ny) = (n.x + eps, n.y + eps);
                let (nx2, ny2) = (n.x + n.w - eps, n.y + n.h - eps);
                let inside = lx < nx2 && hx > nx && ly < ny2 && hy > ny;
                let passes = if k % 2 == 0 { inside && y0 > ny && y0 < ny2 } else { inside };
                assert!(
                    own || !passes,
                    "route {}→{} segment {k} passes node {i}: {pair:?} {n:?}",
                    route.from,
                    route.to
                );
            }
        }
    }
    layout
}

#[test]
fn the_billing_graph_routes_the_skip_edge_around_the_allocation() {
    // usage_snapshot → storage_bill → credit_allocation → usage_report, and storage_bill →
    // usage_report directly: the direct edge must not pass under credit_allocation.
    let size = NodeSize { w: 250.0, h: 64.0 };
    let edges = [(0, 1), (1, 2), (1, 3), (2, 3)];
    let layout = check(&[size; 4], &edges);
    let xs: Vec<f64> = layout.nodes.iter().map(|n| n.x).collect();
    assert!(xs[0] < xs[1] && xs[1] < xs[2] && xs[2] < xs[3], "one column each: {xs:?}");
    let skip = &layout.routes[2];
    assert_eq!(skip.points.len(), 5, "the skip edge passes credit_allocation's column through a slot of its own");
    let allocation = layout.nodes[2];
    let slot = skip.points[2].1;
    assert!(slot < allocation.y || slot > allocation.y + allocation.h, "beside the allocation, not under it");
}

#[test]
fn a_gap_is_as_wide_as_the_widest_label_leaving_its_column() {
    let size = NodeSize { w: 100.0, h: 40.0 };
    let layout = layered(&[size; 3], &[(0, 1), (1, 2)], &[300.0, 0.0], Spacing::default());
    let first_gap = layout.nodes[1].x - (layout.nodes[0].x + 100.0);
    let second_gap = layout.nodes[2].x - (layout.nodes[1].x + 100.0);
    assert!(first_gap >= 300.0 + Spacing::default().label_pad, "{first_gap}");
    assert!((second_gap - Spacing::default().gap_x).abs() < 1e-9, "{second_gap}");
}

#[test]
fn an_empty_graph_and_a_lone_node_lay_out() {
    let empty = layered(&[], &[], &[], Spacing::default());
    assert_eq!((empty.width, empty.height, empty.nodes.len()), (0.0, 0.0, 0));
    let one = layered(&[NodeSize { w: 10.0, h: 20.0 }], &[], &[], Spacing::default());
    assert_eq!((one.width, one.height), (10.0, 20.0));
}

fn dag() -> impl Strategy<Value = (Vec<NodeSize>, Vec<(usize, usize)>)> {
    (1usize..18).prop_flat_map(|n| {
        let sizes = proptest::collection::vec((40.0..260.0f64, 20.0..90.0f64), n)
            .prop_map(|v| v.into_iter().map(|(w, h)| NodeSize { w, h }).collect::<Vec<_>>());
        let edges = proptest::collection::btree_set((0..n, 0..n), 0..(n * 2))
            .prop_map(|set| set.into_iter().filter(|(a, b)| a < b).collect::<Vec<_>>());
        (sizes, edges)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn no_edge_ever_passes_under_a_node((sizes, edges) in dag()) {
        check(&sizes, &edges);
    }
}
