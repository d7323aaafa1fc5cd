"""The service queue (issue #20): open support tickets ranked by p_sla_breach × customer lifetime value."""
