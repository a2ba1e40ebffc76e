def test_login_and_dashboard(client, auth, make):
    op = make.operator(roles=("platform_admin",), org=make.platform(), username="boss")
    response = auth.login("boss")
    assert response.status_code == 302
    page = client.get("/orgs")
    assert page.status_code == 200
